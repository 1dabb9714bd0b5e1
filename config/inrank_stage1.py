# InRank stage 1 (inrank.py): GPT-2 small from scratch with low-rank MLPs W = U V whose rank grows
# (InRank's GPT-2 defaults: 2 + 100 ranks at the start, warmup 200, a check every 25 steps,
# threshold 0.9, at most min(in, out) // 2 = 384 ranks). Stage 1 is short; then:
#   python compress.py lowrank found --from checks/inrank_stage1/ckpt.pt --out checks/inrank_stage2.pt
#   python train.py config/inrank_stage2.py
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=8 train.py config/inrank_stage1.py
init_from = 'scratch'
out_dir = 'checks/inrank_stage1'
mlp = 'lowrank'
lowrank_rank = 0              # allocate the maximum rank; inrank.py uses the first ranks only
inrank = True
inrank_init_modes = 2
inrank_buffer_modes = 100
inrank_threshold = 0.9
inrank_warmup_iter = 200
inrank_gap_iter = 25

# nanoGPT's from-scratch GPT-2 small recipe: 12 x 40 x 1024 ~ 0.5M tokens per step (global)
dataset = 'openwebtext'
batch_size = 12
gradient_accumulation_steps = 40
block_size = 1024
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 2000
max_iters = 5000              # stage 1 only finds the ranks
lr_decay_iters = 600000       # stage 2 continues the same schedule's shape from a fresh start
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
log_interval = 10
compile = False               # every rank change would recompile the model
