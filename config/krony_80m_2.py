# Krony-PT 80M-2: `256 1024 2` with learnable scalars starting at alpha (80,400,048 parameters + 48 scalars)
#   python data/openwebtext/prepare.py
#   python kron_decompose.py 256 1024 2 --init vl --scalers --from gpt2 --out checks/kron_256_1024_2_vl_scalers.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_80m_2.py     (or: python train.py config/krony_80m_2.py)
init_from = 'checks/kron_256_1024_2_vl_scalers.pt'   # the architecture comes from this checkpoint's model_args
out_dir = 'checks/krony_80m_2'

# the paper's recipe: OpenWebText, 24 x 5 x 1024 = 122,880 tokens per step, AdamW (0.9, 0.95),
# weight decay 0.1, clip 1.0, cosine 6e-5 -> 6e-6 with warm-up, bf16 on the GPU
dataset = 'openwebtext'
batch_size = 24
gradient_accumulation_steps = 5   # global: 8 GPUs need a multiple of 8 (e.g. 8, with batch_size 15)
block_size = 1024

learning_rate = 6e-5
min_lr = 6e-6
warmup_iters = 1000
max_iters = 294272               # 4 epochs of OpenWebText's ~9.04B training tokens
lr_decay_iters = 294272
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
eval_ppl = ['wiki103']            # reported at each eval; best.pt is chosen on OpenWebText val loss only
log_interval = 10
compile = True
