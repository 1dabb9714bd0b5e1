# low-rank MLPs at about the size of Krony-PT's 81M model: every MLP matrix of GPT-2 small becomes
# U V of rank 154 by truncated SVD (154 * (768 + 3072) = 591,360 parameters per matrix vs 589,828
# for `768 768 1`; 82,009,344 in all, paper count), trained with the paper's recipe
#   python compress.py lowrank 154                   # writes checks/lowrank_154.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/lowrank_81m.py
include('../paper_recipe.py')
init_from = 'checks/lowrank_154.pt'
out_dir = 'checks/lowrank_81m'
