# Krony-PT 96M: `384 3072 1`, prune init (even rows, B = [1, 0.1]^T); the paper's best model
# (96,128,304 parameters)
#   python kron_decompose.py 384 3072 1 --init prune   # writes checks/kron_384_3072_1_prune.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_96m_prune.py
include('paper_recipe.py')
init_from = 'checks/kron_384_3072_1_prune.pt'
out_dir = 'checks/krony_96m_prune'
