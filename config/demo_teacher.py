# the demo's dense teacher (script/demo.py): a small model with GPT-2's vocabulary, trained on
# WikiText-103's validation text in a few minutes on 2 CPU cores (script/demo.py passes larger
# settings on a GPU)
#   python data/wikitext103_valid/prepare.py
#   python train.py config/demo_teacher.py
out_dir = 'checks/demo/teacher'
dataset = 'wikitext103_valid'
eval_interval = 40
eval_iters = 8
log_interval = 10

gradient_accumulation_steps = 1
batch_size = 8
block_size = 128

# the 50257 x 64 embedding is most of the parameters and most of the time on a CPU
n_layer = 2
n_head = 4
n_embd = 64

learning_rate = 3e-3
max_iters = 120
warmup_iters = 10
lr_decay_iters = 120
min_lr = 3e-4
