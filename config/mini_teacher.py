# the CPU miniature's dense teacher (script/demo.py, script/compare.py): GPT-2's architecture at
# 6 layers x 96 wide on WikiText-103's validation split as characters; its MLP matrices hold 63%
# of its 697,248 parameters (in GPT-2 small: 46%, two thirds of the non-embedding ones)
#   python data/wikitext103_valid_char/prepare.py
#   python train.py config/mini_teacher.py
out_dir = 'checks/mini/teacher'
dataset = 'wikitext103_valid_char'
n_layer = 6
n_head = 4
n_embd = 96
block_size = 128
dropout = 0.0

batch_size = 16
gradient_accumulation_steps = 1   # 2,048 characters per step
learning_rate = 3e-3
min_lr = 3e-4
warmup_iters = 200
max_iters = 4000                  # 8.2M characters, 8 passes over the training text
lr_decay_iters = 4000

eval_interval = 200
eval_iters = 20
log_interval = 100
compile = False
seed = 0                          # script/compare.py's first teacher seed (it also trains seeds 1 and 2)
