# minGPT-tuned's tinyshakespeare setting (its README: 3 layers, 8 heads, 512 wide, block 128), with
# far fewer steps so that script/mingpt_tricks.py runs each variant in minutes on 2 CPU cores.
# The tricks are switched on by overrides (attention_tricks.py): minGPT-tuned's model is
# --time_weighting=full --time_mixing=shift; its README's lighter weighting --time_weighting=toeplitz;
# this project's forms --time_weighting=toeplitz_query --time_mixing=learned [--time_mix_init=1.0]
#   python data/shakespeare_char/prepare.py
#   python train.py config/baselines/mingpt_tricks.py --time_weighting=full --time_mixing=shift
out_dir = 'checks/mingpt_tricks'
dataset = 'shakespeare_char'
eval_interval = 150
eval_iters = 10
log_interval = 1

gradient_accumulation_steps = 1
batch_size = 4
block_size = 128

n_layer = 3
n_head = 8
n_embd = 512
dropout = 0.1  # minGPT's embedding, residual and attention dropout, which minGPT-tuned trains with

# minGPT's play_char optimiser settings: AdamW (0.9, 0.95), weight decay 0.1, lr 6e-4
learning_rate = 6e-4
max_iters = 150
warmup_iters = 15
lr_decay_iters = 150
min_lr = 6e-5
