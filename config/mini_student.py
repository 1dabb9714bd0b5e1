# the CPU miniature's students of config/mini_teacher.py: the same batches, 500 steps (1/8 of the
# teacher's characters); script/compare.py runs every method with it. The demo's student: the 81M
# shape (`96 96 1`: every MLP matrix A (96, 96) (x) B (1, 4), 4x smaller), Van Loan + rescale
#   python kron_decompose.py 96 96 1 --from checks/mini/teacher/best.pt --out checks/mini/kron_96_96_1_vl.pt
#   python train.py config/mini_student.py
include('mini_teacher.py')
init_from = 'checks/mini/kron_96_96_1_vl.pt'   # the architecture comes from this checkpoint's model_args
out_dir = 'checks/mini/student'
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 25
max_iters = 500
lr_decay_iters = 500
eval_interval = 100
eval_iters = 10
log_interval = 50
