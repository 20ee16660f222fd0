"""Native code Eva builds or loads: the llama.cpp build, the self-check, eva doctor."""
