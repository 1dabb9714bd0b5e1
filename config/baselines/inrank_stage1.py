# InRank stage 1 on GPT-2 small (its wt103/gpt2-in_rank_efficient_stage_1): the ranks start at
# init_modes 2 + buffer_modes 100 and grow when the leading singular values explain less than 0.9
# of the variance; the check comes every 25 forward calls of each process after the first 200
# (inrank_unit='forward', InRank's counter: training micro-batches and evaluation batches alike).
# Stage 1 stops at 130 steps, still inside the learning-rate warm-up: with 8 micro-batches per
# step and 2 start-up evaluation batches the first check falls in step 28 and one follows every
# 25 / 8 steps, 33 checks in all. Then stage 2 continues the same run at the rank found:
#   python data/wikitext103/prepare.py
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_stage1.py
#   python compress.py lowrank found --from checks/inrank_stage1/ckpt.pt --resume_dir checks/inrank_stage2
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_stage2.py
# InRank's counter counts the forwards of each process, so this schedule assumes 8 processes.
# On N processes each runs 64 / N micro-batches per step; to keep the same checks scale the
# counts by 8 / N, e.g. on one GPU: --inrank_warmup_iter=1600 --inrank_gap_iter=200
# Explained-ratio ablation (InRank's README: 20.2 ppl, 1.5x smaller), stage 2 unchanged:
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_stage1.py --inrank_threshold=0.8 --out_dir=checks/inrank_r08_stage1
include('inrank_gpt2.py')
out_dir = 'checks/inrank_stage1'
inrank = True
inrank_unit = 'forward'
inrank_init_modes = 2
inrank_buffer_modes = 100
inrank_threshold = 0.9
inrank_warmup_iter = 200
inrank_gap_iter = 25
max_iters = 130
# InRank's trainer validates 2 batches per process before training (Lightning's sanity check) and
# its counter counts them: 8 batches over 8 processes, one per split each, give the same 2
eval_iters = 8
