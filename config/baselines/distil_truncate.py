# DistilGPT2-style student: layers 0, 2, 4, 7, 9, 11 of GPT-2 small (81,912,576 parameters, about
# Krony-PT's 81M), distilled from GPT-2 with the weights of DistilGPT2's public training command
# (alpha_ce 5.0, alpha_clm 2.0, alpha_cos 1.0, temperature 2.0, frozen position embeddings) on the
# paper's data and batch, so that it is compared with the Krony-PT models at equal training
#   python compress.py truncate                      # writes checks/truncate_0-2-4-7-9-11.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/baselines/distil_truncate.py
include('../paper_recipe.py')
init_from = 'checks/truncate_0-2-4-7-9-11.pt'
out_dir = 'checks/distil_truncate'
kd_teacher = 'gpt2'
kd_temperature = 2.0
kd_alpha_ce = 5.0
kd_alpha_clm = 2.0
kd_alpha_cos = 1.0
freeze_pos_emb = True
