# the paper's pipeline at laptop size: included after a paper config (config/train_gpt2.py and
# the other krony_*.py), it keeps that run's model and optimizer recipe and shrinks the rest to a
# few minutes on a CPU: a small offline data set, short sequences, 30 steps, small evaluations.
# It checks that the pipeline runs, not what the paper trains (that takes GPUs and OpenWebText).
#   python kron_decompose.py 768 768 1 --from gpt2        # or --from a local GPT-2 directory
#   python data/wikitext103_valid/prepare.py
#   python train.py config/train_gpt2.py config/cpu_smoke_gpt2.py
#   python krony_to_gpt.py checks/cpu_smoke_gpt2/best.pt out/cpu_smoke_gpt2
#   head -c 12000 data/texts/wikitext-2-raw/wiki.test.raw > out/wiki_test_head.txt
#   python perplexity_eval.py out/cpu_smoke_gpt2 --text_file out/wiki_test_head.txt --max_length 256 --batch_size 1
out_dir = 'checks/cpu_smoke_gpt2'
dataset = 'wikitext103_valid'     # OpenWebText is a 54 GB download; this prepares offline from data/texts
batch_size = 2
gradient_accumulation_steps = 1
block_size = 64                   # 128 tokens per step; the model keeps its 1,024 positions
max_iters = 30
warmup_iters = 5
lr_decay_iters = 30
eval_interval = 30                # evaluations (and ~1 GB checkpoints) at the start and the end only
eval_iters = 4                    # batches per split: seconds, not the paper's 200 x 24 sequences
eval_ppl = []                     # perplexity_eval.py runs once at the end instead
log_interval = 1
compile = False                   # compiling takes longer than these 30 steps
