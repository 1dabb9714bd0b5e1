# InRank stage 1 on GPT-2 large (its wt103/gpt2l-in_rank_efficient_stage_1; README: 20.4 ppl,
# 1.7x smaller): 36 layers of 1280, lr 1.5e-4, float32, 4 sequences per micro-batch, so each of
# the 8 processes runs 16 micro-batches per step and the checks (every 25 forward calls after the
# first 200) come about every 1.6 steps, from step 14 on. Max rank 640.
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_gpt2l_stage1.py
#   python compress.py lowrank found --from checks/inrank_gpt2l_stage1/ckpt.pt --resume_dir checks/inrank_gpt2l_stage2
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_gpt2l_stage2.py
# fixed-rank baseline (20.8 ppl): --inrank_init_modes=313 --inrank_buffer_modes=0 --inrank_warmup_iter=999999999
include('inrank_stage1.py')
out_dir = 'checks/inrank_gpt2l_stage1'
n_layer = 36
n_head = 20
n_embd = 1280
batch_size = 4
gradient_accumulation_steps = 128  # global: still 512 sequences per step
learning_rate = 1.5e-4
dtype = 'float32'
