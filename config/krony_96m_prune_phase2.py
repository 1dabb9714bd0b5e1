# the paper's last phase for Krony-PT 96M prune: one more epoch at ~327K tokens per step and a
# constant learning rate of 6e-6, starting from phase one's best checkpoint
#   python train.py config/krony_96m_prune.py          (phase one, writes checks/krony_96m_prune/best.pt)
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_96m_prune_phase2.py
# other models: --init_from=checks/<model>/best.pt --out_dir=checks/<model>_phase2
include('paper_recipe.py')
init_from = 'checks/krony_96m_prune/best.pt'
out_dir = 'checks/krony_96m_prune_phase2'
batch_size = 32
gradient_accumulation_steps = 10  # 32 x 10 x 1024 = 327,680 tokens per step
learning_rate = 6e-6
decay_lr = False
max_iters = 27588                 # one epoch of ~9.04B tokens
eval_interval = 500
