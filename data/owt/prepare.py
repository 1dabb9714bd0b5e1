"""
The paper repository's name for the OpenWebText preparation: the same as
data/openwebtext/prepare.py, which writes data/openwebtext/{train,val}.bin (dataset='openwebtext'
in the configs). Takes the same arguments.

    python data/owt/prepare.py
"""

import os
import runpy
import sys

if __name__ == '__main__':
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'openwebtext', 'prepare.py')
    sys.argv[0] = os.path.normpath(script)
    runpy.run_path(sys.argv[0], run_name='__main__')
