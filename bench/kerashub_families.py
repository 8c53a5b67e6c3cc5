"""Small KerasHub models of each family, built offline from their classes with random weights (no preset, no
download), for bench/export_coverage.py's KerasHub section and tests/toolkit/exporting/test_kerashub.py.

Each builder returns `(model, inputs)`: a `keras.Model` and, for each of its inputs in `model.inputs` order, the
sample shape without the batch axis and its kind (`image`: uniform [0, 1), `tokens`: ids below `VOCAB`, `mask`: ones,
`audio`: normal noise). Detectors keep their raw heads (boxes and class logits before decoding); speech models are cut
to their audio encoder (features or samples in, the encoder's sequence out).
"""

from __future__ import annotations

VOCAB = 50
SIDE = 32


def _image(side: int = SIDE) -> dict:
    return {"image": ((side, side, 3), "image")}


def mobilenet_v3():
    import keras_hub

    backbone = keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16], [32, 32]], stackwise_num_blocks=[1, 2], stackwise_num_filters=[[8], [16, 16]],
        stackwise_kernel_size=[[3], [5, 5]], stackwise_num_strides=[[2], [2, 1]],
        stackwise_se_ratio=[[None], [0.25, 0.25]], stackwise_activation=[["relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1], [2, 2]], output_num_filters=32, depthwise_filters=8, depthwise_stride=2,
        depthwise_residual=False, last_layer_filter=32, squeeze_and_excite=0.5, input_num_filters=8,
        image_shape=(SIDE, SIDE, 3))
    return keras_hub.models.MobileNetImageClassifier(backbone=backbone, num_classes=10), _image()


def mobilenet_v5():
    import keras_hub

    backbone = keras_hub.models.MobileNetV5Backbone(
        stackwise_block_types=[["er"], ["uir", "uir"]], stackwise_num_blocks=[1, 2],
        stackwise_num_filters=[[16], [24, 24]], stackwise_strides=[[2], [2, 1]],
        stackwise_act_layers=[["relu"], ["relu", "relu"]], stackwise_exp_ratios=[[4.0], [4.0, 4.0]],
        stackwise_se_ratios=[[0.0], [0.0, 0.0]], stackwise_dw_kernel_sizes=[[0], [5, 5]],
        stackwise_dw_start_kernel_sizes=[[0], [0, 0]], stackwise_dw_end_kernel_sizes=[[0], [0, 0]],
        stackwise_exp_kernel_sizes=[[3], [0, 0]], stackwise_pw_kernel_sizes=[[1], [0, 0]],
        stackwise_num_heads=[[0], [0, 0]], stackwise_key_dims=[[0], [0, 0]], stackwise_value_dims=[[0], [0, 0]],
        stackwise_kv_strides=[[0], [0, 0]], stackwise_use_cpe=[[False], [False, False]], use_msfa=False,
        num_features=64, stem_size=8, image_shape=(SIDE, SIDE, 3))
    return keras_hub.models.MobileNetV5ImageClassifier(backbone=backbone, num_classes=10), _image()


def hgnetv2():
    import keras_hub

    stages = [[8, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]]
    backbone = keras_hub.models.HGNetV2Backbone(
        depths=[1, 1], embedding_size=8, hidden_sizes=[16, 32], stem_channels=[3, 8, 8], hidden_act="relu",
        use_learnable_affine_block=True, stackwise_stage_filters=stages, apply_downsample=[False, True],
        use_lightweight_conv_block=[False, True], image_shape=(SIDE, SIDE, 3))
    return keras_hub.models.HGNetV2ImageClassifier(backbone=backbone, num_classes=10, preprocessor=None), _image()


def cspnet():
    import keras_hub

    backbone = keras_hub.models.CSPNetBackbone(
        stem_filters=8, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 1], stackwise_strides=2,
        stackwise_num_filters=[16, 24], block_type="dark_block", stage_type="csp", down_growth=True,
        bottle_ratio=(0.5, 1.0), block_ratio=(1.0, 0.5), expand_ratio=(2.0, 1.0), stem_padding="same",
        image_shape=(SIDE, SIDE, 3))
    return keras_hub.models.CSPNetImageClassifier(backbone=backbone, num_classes=10), _image()


def _resnet_vd(side: int = SIDE):
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[8, 8, 16], input_conv_kernel_sizes=[3, 3, 3], stackwise_num_filters=[64, 32, 32],
        stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2], block_type="basic_block_vd",
        image_shape=(side, side, 3))


def resnet_vd():
    import keras_hub

    return keras_hub.models.ResNetImageClassifier(backbone=_resnet_vd(), num_classes=10), _image()


def vit():
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(image_shape=(SIDE, SIDE, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=10), _image()


def deit():
    import keras_hub

    backbone = keras_hub.models.DeiTBackbone(image_shape=(SIDE, SIDE, 3), patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32)
    return keras_hub.models.DeiTImageClassifier(backbone=backbone, num_classes=10), _image()


def _mit(side: int = SIDE):
    import keras_hub

    # Stage 0 with one head and a spatial reduction, as in every MiT (b0-b5): _tf2onnx_compat.reshapes' case.
    return keras_hub.models.MiTBackbone(
        image_shape=(side, side, 3), num_layers=2, hidden_dims=[8, 16], layerwise_depths=[1, 1],
        layerwise_num_heads=[1, 2], layerwise_sr_ratios=[2, 1], layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2], max_drop_path_rate=0.0)


def mit():
    import keras_hub

    return keras_hub.models.MiTImageClassifier(backbone=_mit(), num_classes=10), _image()


def segformer():
    import keras_hub

    backbone = keras_hub.models.SegFormerBackbone(image_encoder=_mit(), projection_filters=8)
    return keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=3), _image()


def deeplab_v3():
    import keras_hub

    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=_resnet_vd(), spatial_pyramid_pooling_key="P4", upsampling_size=4, dilation_rates=[2, 4],
        low_level_feature_key="P2", projection_filters=8, image_shape=(SIDE, SIDE, 3))
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3), _image()


def retinanet():
    import keras_hub

    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=_resnet_vd(64), min_level=3, max_level=4,
                                                  use_p5=False, image_shape=(64, 64, 3))
    return keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=4), _image(64)


def d_fine():
    import keras_hub

    hgnet = keras_hub.models.HGNetV2Backbone(
        stem_channels=[3, 8, 8], stackwise_stage_filters=[[8, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, False], depths=[1, 1],
        hidden_sizes=[16, 32], embedding_size=8, use_learnable_affine_block=True, hidden_act="relu",
        image_shape=(None, None, 3), out_features=["stage1", "stage2"])
    backbone = keras_hub.models.DFineBackbone(
        backbone=hgnet, decoder_in_channels=[16, 16], encoder_hidden_dim=16, num_denoising=0, num_labels=4,
        hidden_dim=16, learn_initial_query=False, num_queries=10, anchor_image_size=(SIDE, SIDE), feat_strides=[4, 8],
        num_feature_levels=2, encoder_in_channels=[16, 32], encode_proj_layers=[1], num_attention_heads=2,
        encoder_ffn_dim=32, num_encoder_layers=1, hidden_expansion=0.5, depth_multiplier=0.5, eval_idx=-1,
        num_decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, decoder_method="default",
        decoder_n_points=[2, 2], lqe_hidden_dim=16, num_lqe_layers=1, out_features=["stage1", "stage2"],
        image_shape=(SIDE, SIDE, 3), seed=0)
    return keras_hub.models.DFineObjectDetector(backbone=backbone, num_classes=4, preprocessor=None), _image()


def bert():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=16)
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    shapes = {"token_ids": ((16,), "tokens"), "segment_ids": ((16,), "zeros"), "padding_mask": ((16,), "mask")}
    return model, shapes


def whisper():
    import keras
    import keras_hub

    backbone = keras_hub.models.WhisperBackbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
                                                intermediate_dim=32, num_mels=16, max_encoder_sequence_length=64,
                                                max_decoder_sequence_length=8)
    encoder = keras.Model(backbone.input["encoder_features"], backbone.output["encoder_sequence_output"],
                          name="whisper_encoder")
    return encoder, {"encoder_features": ((64, 16), "audio")}


def moonshine():
    import keras
    import keras_hub

    backbone = keras_hub.models.MoonshineBackbone(
        vocabulary_size=VOCAB, filter_dim=16, encoder_num_layers=1, decoder_num_layers=1, hidden_dim=16,
        intermediate_dim=32, encoder_num_heads=2, decoder_num_heads=2)
    encoder = keras.Model([backbone.input["encoder_input_values"], backbone.input["encoder_padding_mask"]],
                          backbone.output["encoder_sequence_output"], name="moonshine_encoder")
    return encoder, {"encoder_input_values": ((1600, 1), "audio"), "encoder_padding_mask": ((1600,), "mask")}


FAMILIES = {  # family -> builder
    "MobileNetV3": mobilenet_v3, "MobileNetV5": mobilenet_v5, "HGNetV2": hgnetv2, "CSPNet": cspnet,
    "ResNet-vd": resnet_vd, "ViT": vit, "DeiT": deit, "MiT": mit, "SegFormer": segformer, "DeepLabV3": deeplab_v3,
    "RetinaNet": retinanet, "D-FINE": d_fine, "BERT": bert, "Whisper": whisper, "Moonshine": moonshine,
}


def samples(inputs: dict, batch: int, seed: int = 0) -> dict:
    """Sample arrays for `inputs` (a builder's second value), `batch` rows each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, kind) in inputs.items():
        full = (batch, *shape)
        if kind == "image":
            out[name] = rng.uniform(0, 1, full).astype(np.float32)
        elif kind == "audio":
            out[name] = rng.normal(0, 0.5, full).astype(np.float32)
        elif kind == "tokens":
            out[name] = rng.integers(0, VOCAB, full).astype(np.int32)
        else:  # mask (ones) or zeros
            out[name] = np.full(full, kind == "mask", np.int32)
    return out
