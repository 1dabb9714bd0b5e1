# Krony-PT 80M-2: `256 1024 2` with learnable scalars starting at alpha (80,400,048 parameters + 48 scalars)
#   python kron_decompose.py 256 1024 2 --scalers   # writes checks/kron_256_1024_2_vl_scalers.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_80m_2.py
include('paper_recipe.py')
init_from = 'checks/kron_256_1024_2_vl_scalers.pt'
out_dir = 'checks/krony_80m_2'
max_iters = 294272                # 4 epochs for the small models
lr_decay_iters = 294272
