# Krony-PT 92M-4: `256 1024 4` with learnable scalars starting at alpha (92,983,392 parameters + 96 scalars)
#   python kron_decompose.py 256 1024 4 --scalers   # writes checks/kron_256_1024_4_vl_scalers.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_92m_4.py
include('paper_recipe.py')
init_from = 'checks/kron_256_1024_4_vl_scalers.pt'
out_dir = 'checks/krony_92m_4'
