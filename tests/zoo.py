"""A zoo of public architectures built from their own libraries' code (Hugging Face ``transformers``,
small configs, random initialisation, nothing downloaded), trained a few dozen steps on synthetic data
at the rates their authors use, under ``gf.watch``: what ``test_probe_zoo.py`` and
``benchmarks/zoo.py`` run. Each entry gives the model, a batch maker and the loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

VOCAB, SEQ, IMAGE, CLASSES, BATCH = 64, 16, 32, 4, 8


@dataclass
class Entry:
    name: str
    make: Callable[[], torch.nn.Module]
    batch: Callable[[torch.Generator], dict]
    loss: Callable[[torch.nn.Module, dict], torch.Tensor]
    lr: float = 1e-3


def _images(g):
    return {"pixel_values": torch.randn(BATCH, 3, IMAGE, IMAGE, generator=g),
            "labels": torch.randint(0, CLASSES, (BATCH,), generator=g)}


def _tokens(g):
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}


def _classify_tokens(g):
    return {"input_ids": torch.randint(0, VOCAB, (BATCH, SEQ), generator=g),
            "labels": torch.randint(0, 3, (BATCH,), generator=g)}


def _seq2seq(g):
    return {"input_ids": torch.randint(0, VOCAB, (BATCH, SEQ), generator=g),
            "labels": torch.randint(0, VOCAB, (BATCH, SEQ // 2), generator=g)}


def _hf_loss(model, batch):
    return model(**batch).loss


def _resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    return ResNetForImageClassification(ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                     layer_type="basic", num_labels=CLASSES))


def _convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    return ConvNextForImageClassification(ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2,
                                                         patch_size=2, num_labels=CLASSES))


def _vit():
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(ViTConfig(image_size=IMAGE, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=2, intermediate_size=64, num_labels=CLASSES))


def _mobilenet():
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return MobileNetV2ForImageClassification(MobileNetV2Config(image_size=IMAGE, depth_multiplier=0.25,
                                                               num_labels=CLASSES))


def _llama(attention: str):
    def make():
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                            attn_implementation=attention))
    return make


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64))


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=3,
                                                    max_position_embeddings=64))


def _t5():
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                               num_heads=2, decoder_start_token_id=0))


def _mistral():
    from transformers import MistralConfig, MistralForCausalLM

    return MistralForCausalLM(MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


ZOO = {e.name: e for e in (
    Entry("resnet", _resnet, _images, _hf_loss, 1e-2),
    Entry("convnext", _convnext, _images, _hf_loss),
    Entry("vit", _vit, _images, _hf_loss),
    Entry("mobilenet", _mobilenet, _images, _hf_loss),
    Entry("llama", _llama("sdpa"), _tokens, _hf_loss),
    Entry("llama_eager", _llama("eager"), _tokens, _hf_loss),
    Entry("gpt2", _gpt2, _tokens, _hf_loss),
    Entry("bert", _bert, _classify_tokens, _hf_loss),
    Entry("t5", _t5, _seq2seq, _hf_loss),
    Entry("mistral", _mistral, _tokens, _hf_loss),
)}


def train(entry: Entry, steps: int = 30, seed: int = 0, model=None, lr: float | None = None, **watch_options):
    """Train ``entry`` ``steps`` steps with AdamW under ``watch``; (probe, findings, losses)."""
    from gradientflow.probes import watch

    torch.manual_seed(seed)
    model = model if model is not None else entry.make()
    model.train()
    g = torch.Generator().manual_seed(seed)
    batches = [entry.batch(g) for _ in range(4)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr or entry.lr)
    losses = []
    with watch(model, **watch_options) as probe:
        for step in range(steps):
            opt.zero_grad()
            loss = entry.loss(model, batches[step % len(batches)])
            loss.backward()
            opt.step()
            losses.append(float(loss))
        found = probe.findings()
    return probe, found, losses


__all__ = ["ZOO", "Entry", "train", "F"]
