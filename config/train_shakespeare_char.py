# a small character-level GPT on tinyshakespeare; a CPU smoke test of train.py in a minute or two
#   python data/shakespeare_char/prepare.py
#   python train.py config/train_shakespeare_char.py
out_dir = 'checks/shakespeare_char'
dataset = 'shakespeare_char'
eval_interval = 100
eval_iters = 20
log_interval = 10

gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 300
lr_decay_iters = 300
min_lr = 1e-4
warmup_iters = 20
beta2 = 0.99  # more tokens than steps: a shorter second-moment memory helps (nanoGPT's char setting)
