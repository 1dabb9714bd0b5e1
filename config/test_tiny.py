# a tiny character-level GPT that trains in seconds on a CPU; tests/test_train.py runs it with
# --dataset pointing at a small temporary corpus
#   python data/shakespeare_char/prepare.py
#   python train.py config/test_tiny.py
out_dir = 'checks/test_tiny'
dataset = 'shakespeare_char'
eval_interval = 4
eval_iters = 2
log_interval = 1

gradient_accumulation_steps = 2
batch_size = 4
block_size = 32

n_layer = 2
n_head = 2
n_embd = 32

learning_rate = 1e-3
max_iters = 8
warmup_iters = 2
lr_decay_iters = 8
min_lr = 1e-4
