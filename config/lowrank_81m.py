# low-rank MLPs at about the size of Krony-PT's 81M model: every MLP matrix of GPT-2 small becomes
# U V of rank 154 by truncated SVD (154 * (768 + 3072) = 591,360 parameters per matrix vs 589,828
# for `768 768 1`; 82,009,344 in all, paper count), trained with the paper's recipe
#   python compress.py lowrank 154 --from gpt2 --out checks/lowrank_154.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/lowrank_81m.py
init_from = 'checks/lowrank_154.pt'
out_dir = 'checks/lowrank_81m'

dataset = 'openwebtext'
batch_size = 24
gradient_accumulation_steps = 5
block_size = 1024
learning_rate = 6e-5
min_lr = 6e-6
warmup_iters = 1000
max_iters = 220704
lr_decay_iters = 220704
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
eval_ppl = ['wiki103']
log_interval = 10
compile = True
