# dense GPT-2 small (124,439,808 parameters) trained further with the same recipe as the Krony-PT
# models: the baseline they are compared with
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/gpt2_dense.py
include('../paper_recipe.py')
init_from = 'gpt2'
out_dir = 'checks/gpt2_dense'
