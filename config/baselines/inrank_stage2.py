# InRank stage 2 on GPT-2 small (its wt103/gpt2-in_rank_efficient_stage_2): stage 1's run goes on
# at the rank found, as InRank's trainer resumes it: same step count and learning-rate schedule,
# AdamW state with the factors' moments sliced to the kept ranks, to 100 epochs (22,500 steps).
# The rank found is the largest over the matrices (InRank keeps one per matrix).
#   python compress.py lowrank found --from checks/inrank_stage1/ckpt.pt --resume_dir checks/inrank_stage2
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_stage2.py
include('inrank_gpt2.py')
init_from = 'resume'              # checks/inrank_stage2/ckpt.pt, written by compress.py
out_dir = 'checks/inrank_stage2'
max_iters = 22500
