# Krony-PT's training recipe, included by every paper-model config, which then sets only what
# differs (init checkpoint, out_dir, epochs): OpenWebText, 24 x 5 x 1024 = 122,880 tokens per
# step, AdamW (0.9, 0.95), weight decay 0.1, clip 1.0, cosine 6e-5 -> 6e-6 after 1,000 warm-up
# steps, bf16 on the GPU (dtype='auto'), 3 epochs of OpenWebText's ~9.04B training tokens.
#   python data/openwebtext/prepare.py
dataset = 'openwebtext'
batch_size = 24
gradient_accumulation_steps = 5   # global: 8 GPUs need a multiple of 8 (e.g. 8, with batch_size 15)
block_size = 1024

learning_rate = 6e-5
min_lr = 6e-6
warmup_iters = 1000
max_iters = 220704                # 3 epochs; one epoch is 73,568 steps
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
