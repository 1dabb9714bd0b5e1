# InRank's fixed-rank baseline for GPT-2 small (its README: 19.7 ppl): stage 1 with 254 ranks from
# the start (init_modes 254, buffer_modes 0) and no check, the factors still allocated and
# initialised at the maximum rank 384 as in InRank's run. InRank's README gives only this stage-1
# command, whose config stops at 130 steps; the same stage 2 completes it:
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_fixed_rank.py
#   python compress.py lowrank found --from checks/inrank_fixed_rank_stage1/ckpt.pt --resume_dir checks/inrank_fixed_rank_stage2
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/inrank_stage2.py --out_dir=checks/inrank_fixed_rank_stage2
# GPT-2 medium and large: config/baselines/inrank_gpt2m_stage1.py with --inrank_init_modes=287 (313 for
# large) and the same three overrides below.
include('inrank_stage1.py')
out_dir = 'checks/inrank_fixed_rank_stage1'
inrank_init_modes = 254
inrank_buffer_modes = 0
inrank_warmup_iter = 999999999    # never checked
