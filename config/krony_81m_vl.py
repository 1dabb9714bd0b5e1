# Krony-PT 81M: `768 768 1`, Van Loan init with normalisation (81,972,576 parameters, paper count)
#   python data/openwebtext/prepare.py
#   python kron_decompose.py 768 768 1 --init vl --from gpt2 --out checks/kron_768_768_1_vl.pt
#   torchrun --standalone --nproc_per_node=8 train.py config/krony_81m_vl.py     (or: python train.py config/krony_81m_vl.py)
init_from = 'checks/kron_768_768_1_vl.pt'   # the architecture comes from this checkpoint's model_args
out_dir = 'checks/krony_81m_vl'

# the paper's recipe: OpenWebText, 24 x 5 x 1024 = 122,880 tokens per step, AdamW (0.9, 0.95),
# weight decay 0.1, clip 1.0, cosine 6e-5 -> 6e-6 with warm-up, bf16 on the GPU
dataset = 'openwebtext'
batch_size = 24
gradient_accumulation_steps = 5   # global: 8 GPUs need a multiple of 8 (e.g. 8, with batch_size 15)
block_size = 1024

learning_rate = 6e-5
min_lr = 6e-6
warmup_iters = 1000
max_iters = 220704               # 3 epochs of OpenWebText's ~9.04B training tokens
lr_decay_iters = 220704
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
eval_ppl = ['wiki103']            # reported at each eval; best.pt is chosen on OpenWebText val loss only
log_interval = 10
compile = True
