# Krony-PT 96M: `384 3072 1`, Van Loan init with normalisation (96,128,304 parameters)
#   python kron_decompose.py 384 3072 1         # writes checks/kron_384_3072_1_vl.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_96m_vl.py
include('paper_recipe.py')
init_from = 'checks/kron_384_3072_1_vl.pt'
out_dir = 'checks/krony_96m_vl'
