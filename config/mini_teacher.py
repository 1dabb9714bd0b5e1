# the CPU miniature's dense teacher (script/demo.py, script/compare.py): GPT-2's architecture at
# 6 layers x 96 wide on WikiText-103's validation split as characters; its MLP matrices hold 62%
# of its 709,536 parameters (GPT-2 small: two thirds of the non-embedding ones)
#   python data/wikitext103_valid_char/prepare.py
#   python train.py config/mini_teacher.py
out_dir = 'checks/mini/teacher'
dataset = 'wikitext103_valid_char'
n_layer = 6
n_head = 4
n_embd = 96
block_size = 256
dropout = 0.0

batch_size = 16
gradient_accumulation_steps = 1   # 4,096 characters per step
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 100
max_iters = 2000
lr_decay_iters = 2000

eval_interval = 100
eval_iters = 10
log_interval = 50
compile = False
