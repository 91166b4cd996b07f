"""MusicGen's decoder over preallocated per-stream state: the step a continuous-batching scheduler runs.

:class:`StaticDecoder` computes exactly what ``MusicgenForCausalLM`` computes (a test compares its
logits with a teacher-forced forward of the real model, and its greedy tokens with ``generate``),
but on buffers allocated once and updated in place, so one decoding step of many independent
streams is a fixed sequence of kernels:

* **slots** -- the decoder holds up to ``capacity`` streams; slot ``s`` owns rows ``2s`` (conditioned
  on its text) and ``2s + 1`` (the unconditioned row of classifier-free guidance; without guidance
  one row per slot). Active streams occupy the first slots, so a step runs on one leading slice of
  every buffer (:meth:`StaticDecoder.move` compacts when a stream leaves);
* **self-attention keys/values** -- ``(rows, heads, max_positions, head_dim)`` per layer; a step
  writes each row's new key/value at that row's own position and attends to positions up to it,
  so streams of different lengths share a step;
* **cross-attention keys/values** -- computed once from a stream's text when it changes
  (:meth:`StaticDecoder.set_text`) and kept per slot; the unconditioned rows attend to a zeroed
  text, whose keys and values are zero (the projections have no bias), so their cross-attention
  output is zero and is not computed;
* **positions** -- each slot's next position; :meth:`StaticDecoder.prefill_many` writes a whole sequence
  into each of several slots at once (the window slide: a stream restarts from its last tokens when
  its positions run out).

``step`` takes the previous column of codes of each active stream and returns the guided logits
of the next column, ``(n, codebooks, vocab)``, as float32. Everything is torch; the caller picks
tokens (:mod:`engines.musicgen.sampling`). Shapes never change between steps, which is what CUDA
graphs (or ``torch.compile(mode="reduce-overhead")``) need; :meth:`StaticDecoder.step` itself takes
no Python decisions that depend on values on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class _Layer:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    qkv: torch.Tensor  # (3 D, D): q, k, v stacked
    out: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    cross_q: torch.Tensor
    cross_kv: torch.Tensor  # (2 D, D): k, v stacked (applied to the text once)
    cross_out: torch.Tensor
    ln3_w: torch.Tensor
    ln3_b: torch.Tensor
    fc1: torch.Tensor
    fc2: torch.Tensor


class StaticDecoder:
    """MusicGen's decoder for up to ``capacity`` streams at once (see the module doc)."""

    def __init__(self, model: Any, capacity: int, max_positions: int, max_text: int = 64, *,
                 guidance_scale: float = 3.0, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        import torch

        dec = model.decoder  # MusicgenForCausalLM
        cfg = dec.config
        self.device = torch.device(device) if device is not None else next(dec.parameters()).device
        self.dtype = dtype or next(dec.parameters()).dtype
        self.capacity = capacity
        self.guidance_scale = float(guidance_scale)
        self.guided = self.guidance_scale > 1.0
        self.rows_per_slot = 2 if self.guided else 1
        self.max_positions = max_positions
        self.max_text = max_text
        self.num_codebooks = int(cfg.num_codebooks)
        self.vocab = int(cfg.vocab_size)
        self.hidden = int(cfg.hidden_size)
        self.heads = int(cfg.num_attention_heads)
        self.head_dim = self.hidden // self.heads
        self.eps = 1e-5
        if cfg.activation_function not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"unsupported decoder activation {cfg.activation_function!r}")
        self._gelu_approx = "none" if cfg.activation_function == "gelu" else "tanh"

        def w(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(self.device, self.dtype).contiguous()

        inner = dec.model.decoder
        if max_positions > inner.embed_positions.weights.shape[0]:
            inner.embed_positions.make_weights(max_positions, self.hidden)
        self.embed = [w(e.weight) for e in inner.embed_tokens]
        self.positions = w(inner.embed_positions.weights[:max_positions])
        self.layers: list[_Layer] = []
        for layer in inner.layers:
            sa, ca = layer.self_attn, layer.encoder_attn
            self.layers.append(_Layer(
                w(layer.self_attn_layer_norm.weight), w(layer.self_attn_layer_norm.bias),
                w(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight])), w(sa.out_proj.weight),
                w(layer.encoder_attn_layer_norm.weight), w(layer.encoder_attn_layer_norm.bias),
                w(ca.q_proj.weight), w(torch.cat([ca.k_proj.weight, ca.v_proj.weight])), w(ca.out_proj.weight),
                w(layer.final_layer_norm.weight), w(layer.final_layer_norm.bias),
                w(layer.fc1.weight), w(layer.fc2.weight)))
        self.final_w, self.final_b = w(inner.layer_norm.weight), w(inner.layer_norm.bias)
        self.heads_w = torch.stack([w(h.weight) for h in dec.lm_heads])  # (K, V, D)
        # text -> decoder width, as MusicgenForConditionalGeneration does before cross-attention
        proj = getattr(model, "enc_to_dec_proj", None)
        needs_proj = (model.text_encoder.config.hidden_size != cfg.hidden_size
                      and getattr(cfg, "cross_attention_hidden_size", None) is None)
        self.text_proj = (w(proj.weight), w(proj.bias)) if needs_proj and proj is not None else None

        rows = capacity * self.rows_per_slot
        n_layers = len(self.layers)
        kv_shape = (rows, self.heads, max_positions, self.head_dim)
        self.self_k = [torch.zeros(kv_shape, device=self.device, dtype=self.dtype) for _ in range(n_layers)]
        self.self_v = [torch.zeros(kv_shape, device=self.device, dtype=self.dtype) for _ in range(n_layers)]
        x_shape = (capacity, self.heads, max_text, self.head_dim)
        self.cross_k = [torch.zeros(x_shape, device=self.device, dtype=self.dtype) for _ in range(n_layers)]
        self.cross_v = [torch.zeros(x_shape, device=self.device, dtype=self.dtype) for _ in range(n_layers)]
        #: Which text positions of each slot are real (False: padding).
        self.text_mask = torch.zeros((capacity, max_text), dtype=torch.bool, device=self.device)
        #: Next position of each slot (= positions already written).
        self.pos = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self._arange_pos = torch.arange(max_positions, device=self.device)

    # ------------------------------------------------------------------ memory
    def bytes_per_slot(self) -> int:
        """Device memory one stream's self- and cross-attention state takes."""
        per_pos = 2 * len(self.layers) * self.rows_per_slot * self.hidden * self.max_positions
        per_text = 2 * len(self.layers) * self.hidden * self.max_text
        return (per_pos + per_text) * self.self_k[0].element_size()

    # ------------------------------------------------------------------ slots
    def set_text(self, slot: int, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """Condition ``slot`` on a text: ``hidden`` ``(T, text_width)`` from the text encoder, ``mask`` ``(T,)``.

        Only the cross-attention keys/values change; the slot's music so far (its self-attention
        state and position) is kept, so the new text applies from the next step on."""
        import torch.nn.functional as F

        t = min(int(hidden.shape[0]), self.max_text)
        h = hidden[:t].to(self.device, self.dtype)
        m = mask[:t].to(self.device)
        if self.text_proj is not None:
            h = F.linear(h, *self.text_proj)
        h = h * m[:, None].to(h.dtype)  # padded positions are zeros, as the model does
        for i, layer in enumerate(self.layers):
            kv = F.linear(h, layer.cross_kv).view(t, 2, self.heads, self.head_dim)
            self.cross_k[i][slot].zero_()
            self.cross_v[i][slot].zero_()
            self.cross_k[i][slot, :, :t] = kv[:, 0].transpose(0, 1)
            self.cross_v[i][slot, :, :t] = kv[:, 1].transpose(0, 1)
        self.text_mask[slot].zero_()
        self.text_mask[slot, :t] = m.bool()

    def reset(self, slot: int) -> None:
        """Start ``slot`` over: position 0 (its first step takes the start column)."""
        self.pos[slot] = 0

    def move(self, src: int, dst: int) -> None:
        """Copy slot ``src``'s whole state into slot ``dst`` (to keep the active slots first)."""
        r, d = self.rows_per_slot, self.rows_per_slot
        for buf in (*self.self_k, *self.self_v):
            buf[dst * d : dst * d + d] = buf[src * r : src * r + r]
        for buf in (*self.cross_k, *self.cross_v):
            buf[dst] = buf[src]
        self.text_mask[dst] = self.text_mask[src]
        self.pos[dst] = self.pos[src]

    # ------------------------------------------------------------------ compute
    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``(R, K, P)`` and ``positions`` ``(R, P)`` -> ``(R, P, D)``."""
        x = self.positions[positions]
        for k, table in enumerate(self.embed):
            x = x + table[tokens[:, k]]
        return x

    def _layer(self, i: int, x: torch.Tensor, rows: slice | torch.Tensor, pos: torch.Tensor,
               causal_p: int | None) -> torch.Tensor:
        """One decoder layer; ``x`` ``(R, P, D)``; the new keys/values go to ``pos`` ``(R, P)``.

        ``rows``: a slice of rows (a step: one new position per row, attending to everything written
        up to it; ``causal_p`` None) or ``(R,)`` row indices (a prefill: the rows hold whole sequences of
        ``causal_p`` positions from position 0, attending causally among themselves)."""
        import torch
        import torch.nn.functional as F

        layer = self.layers[i]
        r, p = x.shape[0], x.shape[1]
        h = F.layer_norm(x, (self.hidden,), layer.ln1_w, layer.ln1_b, self.eps)
        qkv = F.linear(h, layer.qkv).view(r, p, 3, self.heads, self.head_dim)
        q, k, v = qkv.unbind(2)  # (R, P, H, Dh)
        q = q.transpose(1, 2)  # (R, H, P, Dh)
        if isinstance(rows, slice):
            kbuf, vbuf = self.self_k[i][rows], self.self_v[i][rows]
            row_idx = torch.arange(r, device=self.device)[:, None].expand(r, p)
            kbuf[row_idx, :, pos] = k
            vbuf[row_idx, :, pos] = v
            mask = (self._arange_pos[None, :] <= pos[:, -1:])[:, None, None, :]  # (R, 1, 1, L)
            attn = F.scaled_dot_product_attention(q, kbuf, vbuf, attn_mask=mask)
            step = self.rows_per_slot
            slots: slice | torch.Tensor = slice(rows.start // step, rows.start // step + r // step)
        else:
            self.self_k[i][rows[:, None], :, pos] = k
            self.self_v[i][rows[:, None], :, pos] = v
            attn = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
            slots = rows[:: self.rows_per_slot] // self.rows_per_slot
        x = x + F.linear(attn.transpose(1, 2).reshape(r, p, self.hidden), layer.out)

        # cross-attention: the conditioned rows only (the unconditioned rows' output is zero)
        step = self.rows_per_slot
        xc = x[::step]
        n = xc.shape[0]
        hc = F.layer_norm(xc, (self.hidden,), layer.ln2_w, layer.ln2_b, self.eps)
        qc = F.linear(hc, layer.cross_q).view(n, p, self.heads, self.head_dim).transpose(1, 2)
        tmask = self.text_mask[slots][:, None, None, :]
        ca = F.scaled_dot_product_attention(qc, self.cross_k[i][slots], self.cross_v[i][slots], attn_mask=tmask)
        cross = F.linear(ca.transpose(1, 2).reshape(n, p, self.hidden), layer.cross_out)
        if step == 1:
            x = x + cross
        else:
            x[::step] += cross

        h = F.layer_norm(x, (self.hidden,), layer.ln3_w, layer.ln3_b, self.eps)
        h = F.gelu(F.linear(h, layer.fc1), approximate=self._gelu_approx)
        return x + F.linear(h, layer.fc2)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and the K heads: ``(R, D)`` -> guided ``(n, K, V)`` float32."""
        import torch
        import torch.nn.functional as F

        h = F.layer_norm(x, (self.hidden,), self.final_w, self.final_b, self.eps)
        logits = torch.einsum("rd,kvd->rkv", h, self.heads_w).float()
        if not self.guided:
            return logits
        cond, uncond = logits[0::2], logits[1::2]
        return uncond + (cond - uncond) * self.guidance_scale

    def step(self, n: int, columns: torch.Tensor, advance: torch.Tensor | None = None) -> torch.Tensor:
        """Advance slots ``0..n-1`` by one position: ``columns`` ``(n, K)`` are their previous columns of
        codes; returns the guided logits of the next column ``(n, K, V)`` and moves each slot's position
        on by one -- only where ``advance`` ``(n,)`` is True when it is given (the others' rows are
        computed and their keys/values written at their position, to be overwritten by their next real
        step). A slot whose position reached ``max_positions`` must be re-primed first."""
        import torch

        rows = slice(0, n * self.rows_per_slot)
        cols = columns.repeat_interleave(self.rows_per_slot, dim=0)[:, :, None]  # (R, K, 1)
        # a slot waiting for its window slide (position == max_positions) does not advance; its row is
        # computed at the last position, whose keys/values the slide's prefill rewrites anyway
        pos = self.pos[:n].clamp(max=self.max_positions - 1).repeat_interleave(self.rows_per_slot)[:, None]  # (R, 1)
        x = self._embed(cols, pos)
        for i in range(len(self.layers)):
            x = self._layer(i, x, rows, pos, None)
        if advance is None:
            self.pos[:n] += 1
        else:
            self.pos[:n] = torch.where(advance, self.pos[:n] + 1, self.pos[:n])
        return self._logits(x[:, -1])

    def prefill(self, slot: int, columns: torch.Tensor) -> torch.Tensor:
        """Write the sequence ``columns`` ``(K, P)`` into ``slot`` from position 0 (the start column
        first) and return the guided logits after its last column ``(K, V)``; the slot's position is then P.
        This is a window slide: the stream goes on from these tokens with its current text."""
        return self.prefill_many([slot], columns[None])[0]

    def prefill_many(self, slots: list[int], columns: torch.Tensor) -> torch.Tensor:
        """:meth:`prefill` of several slots in one batch: ``columns`` ``(m, K, P)``, one sequence per slot
        (all of length P); returns ``(m, K, V)``."""
        import torch

        m, _, p = columns.shape
        if p > self.max_positions:
            raise ValueError(f"prefill of {p} positions > max_positions {self.max_positions}")
        if m != len(slots):
            raise ValueError(f"{m} sequences for {len(slots)} slots")
        r = self.rows_per_slot
        slot_idx = torch.tensor(slots, device=self.device, dtype=torch.long)
        rows = (slot_idx[:, None] * r + torch.arange(r, device=self.device)[None, :]).reshape(-1)  # (m r,)
        cols = columns.repeat_interleave(r, dim=0)  # (m r, K, P)
        pos = torch.arange(p, device=self.device)[None].expand(m * r, p)
        x = self._embed(cols, pos)
        for i in range(len(self.layers)):
            x = self._layer(i, x, rows, pos, p)
        self.pos[slot_idx] = p
        return self._logits(x[:, -1])


def positions_for(context_s: float, chunk_s: float, frame_rate: float, num_codebooks: int) -> int:
    """Position budget of a stream: the start column, ``context_s`` of frames kept after a slide, one
    ``chunk_s`` of frames generated before the next slide, and the codebook delay."""
    return 1 + math.ceil((context_s + chunk_s) * frame_rate) + num_codebooks - 1
