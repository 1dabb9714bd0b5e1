# InRank stage 2: the stage-1 model truncated by SVD to the rank its growth found, trained at that
# fixed rank (an ordinary mlp='lowrank' model)
#   python compress.py lowrank found --from checks/inrank_stage1/ckpt.pt --out checks/inrank_stage2.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/inrank_stage2.py
init_from = 'checks/inrank_stage2.pt'
out_dir = 'checks/inrank_stage2'

dataset = 'openwebtext'
batch_size = 12
gradient_accumulation_steps = 40
block_size = 1024
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 200
max_iters = 595000
lr_decay_iters = 595000
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
eval_ppl = ['wiki103']
log_interval = 10
compile = True
