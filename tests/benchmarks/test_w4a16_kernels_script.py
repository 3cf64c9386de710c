"""`benchmarks/w4a16_kernels.py` times the matmuls of kotae's generator as vLLM merges its layers; the timing
itself is the GPU's."""

from benchmark_scripts import load_script


def test_gemma_3_270ms_matmuls_are_its_merged_layers_in_whole_quantization_groups() -> None:
    script = load_script("w4a16_kernels")
    matmuls = script.layer_matmuls(script.generator_shape(None))
    assert matmuls == {
        "qkv_proj": (640, 1536),
        "o_proj": (1024, 640),
        "gate_up_proj": (640, 4096),
        "down_proj": (2048, 640),
    }
    assert all(inputs % script.GROUP_SIZE == 0 for inputs, _ in matmuls.values())
