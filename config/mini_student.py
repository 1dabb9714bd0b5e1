# the CPU miniature's Kronecker student of config/mini_teacher.py: the 81M shape (`96 96 1`: every
# MLP matrix A (96, 96) (x) B (1, 4), 4x smaller), Van Loan init with normalisation, trained on
# 250 steps (1/8 of the teacher's tokens) with the same batch
#   python kron_decompose.py 96 96 1 --from checks/mini/teacher/best.pt --out checks/mini/kron_96_96_1_vl.pt
#   python train.py config/mini_student.py
include('mini_teacher.py')
init_from = 'checks/mini/kron_96_96_1_vl.pt'   # the architecture comes from this checkpoint's model_args
out_dir = 'checks/mini/student'
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 12
max_iters = 250
lr_decay_iters = 250
eval_interval = 25
