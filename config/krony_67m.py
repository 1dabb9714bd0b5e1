# Krony-PT 67M: `32 64 1`, Van Loan init with normalisation (67,893,504 parameters)
#   python kron_decompose.py 32 64 1                # writes checks/kron_32_64_1_vl.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_67m.py
include('paper_recipe.py')
init_from = 'checks/kron_32_64_1_vl.pt'
out_dir = 'checks/krony_67m'
max_iters = 294272                # 4 epochs for the small models
lr_decay_iters = 294272
