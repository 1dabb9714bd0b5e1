# InRank stage 2 on GPT-2 large (its wt103/gpt2l-in_rank_efficient_stage_2): see inrank_stage2.py
#   python compress.py lowrank found --from checks/inrank_gpt2l_stage1/ckpt.pt --resume_dir checks/inrank_gpt2l_stage2
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_gpt2l_stage2.py
include('inrank_stage2.py')
out_dir = 'checks/inrank_gpt2l_stage2'
batch_size = 4
gradient_accumulation_steps = 128
learning_rate = 1.5e-4
dtype = 'float32'
