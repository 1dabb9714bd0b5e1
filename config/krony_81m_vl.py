# Krony-PT 81M: `768 768 1`, Van Loan init with normalisation (81,972,576 parameters, paper count)
#   python kron_decompose.py 768 768 1          # from gpt2; writes checks/kron_768_768_1_vl.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_81m_vl.py   (or: python train.py ...)
include('paper_recipe.py')
init_from = 'checks/kron_768_768_1_vl.pt'   # the architecture comes from this checkpoint's model_args
out_dir = 'checks/krony_81m_vl'
