# InRank stage 1 on GPT-2 medium (its wt103/gpt2m-in_rank_efficient_stage_1; README: 20.2 ppl,
# 1.6x smaller): stage 1 of GPT-2 small with 24 layers of 1024, lr 1.5e-4, float32 (InRank found
# full-rank medium unstable in 16 bits), the same 130 steps and checks. Max rank 512.
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_gpt2m_stage1.py
#   python compress.py lowrank found --from checks/inrank_gpt2m_stage1/ckpt.pt --resume_dir checks/inrank_gpt2m_stage2
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_gpt2m_stage2.py
# fixed-rank baseline (20.5 ppl): --inrank_init_modes=287 --inrank_buffer_modes=0 --inrank_warmup_iter=999999999
include('inrank_stage1.py')
out_dir = 'checks/inrank_gpt2m_stage1'
n_layer = 24
n_head = 16
n_embd = 1024
learning_rate = 1.5e-4
dtype = 'float32'
