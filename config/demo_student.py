# the demo's Kronecker student (script/demo.py): the teacher's MLPs replaced by A (x) B with A
# (64, 64) and B (1, 4) (the analogue of the 81M model's `768 768 1`), then trained on the same text
#   python kron_decompose.py 64 64 1 --from checks/demo/teacher/best.pt --out checks/demo/kron_64_64_1_vl.pt
#   python train.py config/demo_student.py
init_from = 'checks/demo/kron_64_64_1_vl.pt'
out_dir = 'checks/demo/student'
dataset = 'wikitext103_valid'
eval_interval = 40
eval_iters = 8
log_interval = 10

gradient_accumulation_steps = 1
batch_size = 8
block_size = 128

learning_rate = 1e-3
max_iters = 80
warmup_iters = 10
lr_decay_iters = 80
min_lr = 1e-4
