# the paper repository's name for its training config: here the Krony-PT 81M run
#   python kron_decompose.py 768 768 1          # writes checks/kron_768_768_1_vl.pt
#   python train.py config/train_gpt2.py
include('krony_81m_vl.py')
