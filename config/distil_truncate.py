# DistilGPT2-style student: layers 0, 2, 4, 7, 9, 11 of GPT-2 small (81,912,576 parameters, about
# Krony-PT's 81M), trained with distillation from GPT-2 on the paper's data and batch
#   python compress.py truncate --from gpt2 --out checks/truncate_0-2-4-7-9-11.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/distil_truncate.py
init_from = 'checks/truncate_0-2-4-7-9-11.pt'
out_dir = 'checks/distil_truncate'
kd_teacher = 'gpt2'
kd_alpha = 0.5
kd_temperature = 2.0

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
