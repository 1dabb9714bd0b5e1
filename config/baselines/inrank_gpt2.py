# InRank's GPT-2 small recipe on WikiText-103 (its configs/experiment/wt103/gpt2.yaml with the
# in_rank_efficient MLP), included by the InRank configs: GPT-2 small from scratch with low-rank
# MLPs W = U V at the maximum rank min(in, out) // 2 = 384, InRank's kaiming-uniform factors,
# 8 processes x 8 micro-batches x 8 sequences of 1024 tokens = 512 sequences per step, AdamW
# (0.9, 0.999) at 6e-4, weight decay 0.1, clip 1.0, fp16 with a loss scaler, warm-up one epoch
# (225 steps), decay to 0 at 100 epochs (22,500 steps).
#   python data/wikitext103/prepare.py
# What differs from InRank's runs, by design or for want of a switch here:
# - its schedule decays linearly (transformers' get_linear_schedule_with_warmup); train.py's is a
#   cosine to min_lr = 0 over the same steps, with the same linear warm-up;
# - its GPT-2 divides each layer's attention scores by the layer's index + 1
#   (scale_attn_by_inverse_layer_idx), for the full-rank baseline as for InRank; this model does not;
# - its optimizer exempts the embeddings from weight decay, train.py decays them;
# - it reads the training rows as fixed 1024-token chunks, shuffled per epoch; train.py samples
#   windows at random offsets; it validates (and picks checkpoints) on the test split, train.py on
#   the validation split, keeping the test split for perplexity_eval.py.
dataset = 'wikitext103'
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.1                     # HF GPT2Config's resid, embd and attn dropout
mlp = 'lowrank'
lowrank_rank = 0                  # allocate the maximum rank; InRank uses the first ranks only
lowrank_init = 'inrank'

batch_size = 8                    # per micro-batch
gradient_accumulation_steps = 64  # global: 8 per process on 8 processes, as InRank's 8 GPUs
block_size = 1024
learning_rate = 6e-4
min_lr = 0.0
warmup_iters = 225                # ceil(117,920,140 tokens / 1024 / 512): one epoch
lr_decay_iters = 22500            # 100 epochs
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.999                     # torch.optim.AdamW's default, which InRank uses
grad_clip = 1.0
dtype = 'float16'                 # InRank's precision 16 for GPT-2 small
seed = 1113

eval_interval = 225               # once per epoch, as Lightning validates
eval_iters = 32                   # 32 x 8 windows of 1024 tokens: about the validation split's size
eval_ppl = ['wiki103']
log_interval = 10
compile = False                   # every rank change would recompile the model
