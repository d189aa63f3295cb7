"""Stream layout invariants: what truncated BPTT needs from its data."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tbptt
from tbptt import TBPTTError
from tbptt.data.streams import Streams, pack_sequences, pad_sequences
from tbptt.data.tokens import open_tokens


def stream_columns(streams, epoch=0):
    """Every field of every batch of ``epoch`` concatenated over time: (L, B, ...)."""
    batches = list(streams.batches(epoch))
    return [torch.cat(parts) for parts in zip(*(b.fields() for b in batches), strict=True)]


@given(n=st.integers(2, 200), batch=st.integers(1, 9), steps=st.integers(1, 12))
def test_each_stream_is_a_contiguous_piece_of_the_sequence(n, batch, steps):
    tokens = np.arange(n)
    if n - 1 < batch:
        with pytest.raises(TBPTTError, match="larger than the data"):
            Streams.language_model(tokens, batch, steps)
        return
    if (n - 1) // batch < steps:
        with pytest.raises(TBPTTError, match="shorter than one window"):
            Streams.language_model(tokens, batch, steps)
        return
    streams = Streams.language_model(tokens, batch, steps)
    inputs, targets, resets, mask = stream_columns(streams)
    length = (n - 1) // batch
    assert inputs.shape == (length, batch)
    for b in range(batch):
        assert inputs[:, b].tolist() == list(range(b * length, (b + 1) * length))
    assert torch.equal(targets, inputs + 1)  # every target is its own input's successor
    assert mask.all()
    assert resets[0].all() and not resets[1:].any()
    assert streams.left_out() == (n - 1) - batch * length


@given(n=st.integers(2, 200), batch=st.integers(1, 9), steps=st.integers(1, 12))
def test_padding_keeps_every_pair_exactly_once_and_masks_the_rest(n, batch, steps):
    if n - 1 < batch or -(-(n - 1) // batch) < steps:
        return
    streams = Streams.language_model(np.arange(n), batch, steps, remainder="pad")
    inputs, targets, _, mask = stream_columns(streams)
    assert sorted(inputs[mask].tolist()) == list(range(n - 1))
    assert torch.equal(targets[mask], inputs[mask] + 1)
    assert streams.left_out() == 0


def test_batches_are_steps_long_and_the_last_may_be_shorter():
    streams = Streams.language_model(np.arange(23), 2, 4)
    assert [b.inputs.shape[0] for b in streams.batches(0)] == [4, 4, 3]
    assert len(streams) == 3


def test_left_out_steps_are_reported(caplog):
    with caplog.at_level(logging.INFO, logger="tbptt.data.streams"):
        streams = Streams(np.arange(10), np.arange(10), 3, 2)
    assert streams.left_out() == 1
    assert "1 steps left out" in caplog.text


def test_random_offsets_move_window_boundaries_reproducibly():
    make = lambda: Streams.language_model(np.arange(500), 4, 10, random_offset=True, seed=3)  # noqa: E731
    streams = make()
    offsets = [streams.offset(epoch) for epoch in range(8)]
    assert offsets[0] == 0 and len(set(offsets)) > 1 and max(offsets) < 10
    assert offsets == [make().offset(epoch) for epoch in range(8)]
    inputs, targets, _, mask = stream_columns(streams, epoch=int(np.argmax(offsets)))
    assert inputs[0, 0] == max(offsets)
    assert torch.equal(targets, inputs + 1) and mask.all()


def test_epochs_restart_streams_unless_state_is_carried():
    fresh = Streams.language_model(np.arange(50), 2, 5)
    carried = Streams.language_model(np.arange(50), 2, 5, carry_state=True)
    assert next(iter(fresh)).resets[0].all()
    assert not next(iter(carried)).resets.any()


def test_iteration_serves_successive_epochs_and_resume_continues_exactly():
    streams = Streams.language_model(np.arange(300), 3, 7, random_offset=True, seed=1)
    first, second = list(streams), list(streams)
    assert streams.epoch == 2
    assert first[0].inputs[0, 0] != second[0].inputs[0, 0] or streams.offset(1) == 0
    resumed = list(streams.batches(1, start=4))
    for got, want in zip(resumed, second[4:], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got.fields(), want.fields(), strict=True))


def test_document_starts_become_resets():
    starts = np.zeros(40, dtype=bool)
    starts[[0, 7, 19, 33]] = True
    streams = Streams(np.arange(40), np.arange(40), 2, 6, starts=starts)
    inputs, _, resets, _ = stream_columns(streams)
    assert sorted(inputs[resets].tolist()) == [0, 7, 19, 20, 33]  # streams 0, 20; documents


def make_sequences(lengths, features=2):
    gen = torch.Generator().manual_seed(0)
    return [
        (torch.randn(n, features, generator=gen), torch.full((n,), i, dtype=torch.long))
        for i, n in enumerate(lengths)
    ]


def unpack(streams):
    """The sequences found in the layout: runs of valid steps split at resets."""
    inputs, targets, resets, mask = stream_columns(streams)
    found = []
    for b in range(inputs.shape[1]):
        for i in range(inputs.shape[0]):
            if resets[i, b]:
                found.append(([], []))
            if mask[i, b]:
                found[-1][0].append(inputs[i, b])
                found[-1][1].append(targets[i, b])
    return found


@given(lengths=st.lists(st.integers(1, 15), min_size=5, max_size=20), batch=st.integers(1, 5))
def test_packing_keeps_every_sequence_whole_with_a_reset_at_its_start(lengths, batch):
    sequences = make_sequences(lengths)
    streams = pack_sequences(sequences, batch, 4)
    found = unpack(streams)
    assert len(found) == len(sequences)
    for inputs, targets in found:
        label = int(targets[0])
        assert torch.equal(torch.stack(inputs), sequences[label][0])
        assert all(int(t) == label for t in targets)  # no target from another sequence
    _, _, _, mask = stream_columns(streams)
    totals = mask.sum(0).tolist()
    assert max(totals) - min(totals) <= max(lengths)  # balanced


def test_padding_serves_one_sequence_per_row_aligned_to_batches():
    sequences = make_sequences([5, 2, 7, 3, 1])
    streams = pad_sequences(sequences, 2, 3)
    batches = list(streams.batches(0))
    # groups: (5, 2) padded to 6 -> 2 batches; (7, 3) -> 9 -> 3 batches; (1, -) -> 3 -> 1 batch
    assert len(batches) == 6
    for first in (0, 2):
        assert batches[first].resets[0].tolist() == [True, True]
    assert batches[5].resets[0].tolist() == [True, False]  # row 1 is empty: padding only
    assert batches[5].mask.sum(0).tolist() == [1, 0]
    assert len(unpack(streams)) == 5


def test_one_target_per_sequence_is_scored_at_its_last_step():
    sequences = [(torch.randn(n, 2), torch.tensor(n % 3)) for n in (4, 2, 5)]
    streams = pack_sequences(sequences, 2, 3, target_at="last_step")
    inputs, targets, resets, mask = stream_columns(streams)
    assert int(mask.sum()) == 3
    assert sorted(targets[mask].tolist()) == sorted(n % 3 for n in (4, 2, 5))
    for b in range(2):
        for i in np.flatnonzero(mask[:, b].numpy()):
            assert i + 1 == len(mask) or resets[i + 1, b] or not mask[i + 1 :, b].any()


def test_memory_mapped_tokens_stream_as_int64(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(1000, dtype=np.uint16).tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    batch = next(iter(Streams.language_model(tokens, 4, 8)))
    assert batch.inputs.dtype == torch.int64
    assert batch.inputs[:, 1].tolist() == list(range(249, 257))


@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_a_memory_map_streams_the_same_batches_as_an_array_in_memory(tmp_path, remainder):
    path = tmp_path / "tokens.bin"
    np.arange(2000, dtype=np.uint16)[::-1].tofile(path)
    mapped = np.memmap(path, dtype=np.uint16, mode="r")
    in_memory = np.array(mapped)
    for epoch in range(3):
        got = Streams.language_model(mapped, 7, 33, remainder=remainder, random_offset=True)
        want = Streams.language_model(in_memory, 7, 33, remainder=remainder, random_offset=True)
        for a, b in zip(got.batches(epoch), want.batches(epoch), strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a.fields(), b.fields(), strict=True))


def resident_bytes_of(path):
    """Bytes of the file at ``path`` mapped into this process (Rss in /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_streaming_a_memory_map_keeps_none_of_it_resident(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(1 << 22, dtype=np.uint16).tofile(path)  # 8 MiB
    tokens = open_tokens(path)
    served = sum(int(b.mask.sum()) for b in Streams.language_model(tokens, 4, 4096))
    assert served == (1 << 22) - 4  # every pair was read
    assert resident_bytes_of(path) == 0
    assert int(tokens[-1]) == 65535  # indexing the map itself does map its pages
    assert resident_bytes_of(path) > 0


def test_streams_feed_the_runner_and_a_data_loader():
    tokens = torch.randint(0, 5, (401,), generator=torch.Generator().manual_seed(0))
    streams = Streams.language_model(tokens, 4, 10)
    loader = torch.utils.data.DataLoader(streams, batch_size=None)
    model = tbptt.models.GRU(8, vocab_size=5)
    runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=5, k2=10)
    windows = 0
    for batch in loader:
        for window in runner.windows(
            batch.inputs, batch.targets, resets=batch.resets, mask=batch.mask
        ):
            window.loss.backward()
            windows += 1
    assert windows == 20


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Streams(np.arange(5), np.arange(5), 6, 2), "batch_size 6 is larger"),
        (lambda: Streams(np.arange(5), np.arange(5), 2, 0), "steps must be an integer >= 1"),
        (lambda: Streams(np.arange(5), np.arange(5), 0, 2), "batch_size must be an integer >= 1"),
        (lambda: Streams(np.arange(5), np.arange(5), 2, 2.5), "steps must be an integer >= 1"),
        (lambda: Streams(np.arange(5), np.arange(5), 2, 2, valid=np.ones(3)), "valid has 3"),
        (lambda: pack_sequences(make_sequences([2]), 0, 2), "batch_size must be an integer"),
        (lambda: pad_sequences(make_sequences([2]), 1, 0), "steps must be an integer >= 1"),
        (lambda: Streams(np.arange(9), np.arange(9), 2, 5), "4 steps, shorter than one window"),
        (lambda: Streams(np.arange(5), np.arange(4), 2, 2), "must be aligned"),
        (lambda: Streams(np.arange(5), np.arange(5), 2, 2, remainder="x"), "remainder must"),
        (lambda: Streams(np.arange(5), np.arange(5), 2, 2, starts=np.ones(3)), "starts has 3"),
        (lambda: Streams.language_model(np.arange(1), 1, 2), "at least 2 tokens"),
        (lambda: pack_sequences([], 2, 2), "no sequences"),
        (lambda: pack_sequences([(np.zeros(3), np.zeros(3))], 2, 2), "than the number of seq"),
        (lambda: pack_sequences([(np.zeros(0), np.zeros(0))], 2, 2), "sequence 0 is empty"),
        (lambda: pack_sequences([(np.zeros(3), np.zeros(2))], 2, 2), "3 inputs but 2 targets"),
        (lambda: pad_sequences([(np.zeros(3), np.zeros(3))], 2, 2, target_at="x"), "target_at"),
    ],
)
def test_bad_layouts_are_refused(make, message):
    with pytest.raises(TBPTTError, match=message):
        make()


def test_each_epoch_after_the_first_draws_its_own_offset():
    streams = Streams.language_model(np.arange(500), 4, 10, random_offset=True, seed=3)
    later = [streams.offset(epoch) for epoch in range(1, 9)]
    assert len(set(later)) > 1  # not one offset repeated every epoch


def test_streams_start_at_pair_zero_unless_offsets_are_asked_for():
    streams = Streams.language_model(np.arange(500), 4, 10)
    assert [streams.offset(epoch) for epoch in range(4)] == [0, 0, 0, 0]


def test_offsets_take_every_value_that_leaves_each_stream_a_pair():
    # 6 pairs, 4 streams: an offset of 3 would leave a stream empty; steps 10 allow more
    streams = Streams(np.arange(6), np.arange(6), 4, 10, random_offset=True, allow_short=True)
    assert {streams.offset(epoch) for epoch in range(1, 60)} == {0, 1, 2}


def test_the_length_is_the_batches_of_the_first_epoch():
    streams = Streams.language_model(np.arange(43), 2, 5, random_offset=True, seed=0)
    assert streams.offset(1) > 0  # streams of 21 steps, then at most 20: 4 batches
    assert len(streams) == len(list(streams.batches(0))) == 5


def test_padding_the_remainder_masks_it_even_with_valid_flags():
    streams = Streams(np.arange(11), np.arange(11), 2, 3, remainder="pad", valid=np.ones(11))
    _, _, _, mask = stream_columns(streams)
    assert int(mask.sum()) == 11 and not mask[-1, 1]  # 2 streams of 6: one pad


@pytest.mark.parametrize("tokens", [np.arange(50, dtype=np.int32), torch.arange(50).int()])
def test_integer_tokens_of_any_width_arrive_as_int64(tokens):
    batch = next(iter(Streams.language_model(tokens, 2, 5).batches(0)))
    assert batch.inputs.dtype == batch.targets.dtype == torch.int64
    assert batch.resets.dtype == batch.mask.dtype == torch.bool


def test_packing_places_the_longest_first_on_the_shortest_stream():
    streams = pack_sequences(make_sequences([1, 2, 3, 4]), 2, 5)
    _, targets, _, mask = stream_columns(streams)
    # 4 -> stream 0, 3 -> 1, 2 -> 1 (3 < 4), 1 -> 0 (4 < 5): 5 and 5 steps
    assert mask.sum(0).tolist() == [5, 5]
    assert targets[mask[:, 0], 0].tolist() == [3, 3, 3, 3, 0]


def test_sequences_shorter_than_a_batch_and_a_single_one_can_be_laid_out():
    streams = pack_sequences(make_sequences([3]), 1, 10)
    _, _, _, mask = stream_columns(streams)
    assert mask.tolist() == [[True]] * 3  # one batch of 3 steps


def test_vector_targets_at_every_step_keep_their_shape():
    sequences = [(torch.randn(n, 2), torch.randn(n, 3)) for n in (4, 2)]
    _, targets, _, _ = stream_columns(pack_sequences(sequences, 2, 4))
    assert targets.shape == (4, 2, 3)
    assert torch.equal(targets[:4, 0], sequences[0][1])


def test_one_vector_target_per_sequence_keeps_its_shape():
    sequences = [(torch.randn(n, 2), torch.tensor([n, -n])) for n in (4, 2)]
    streams = pad_sequences(sequences, 2, 4, target_at="last_step")
    _, targets, _, mask = stream_columns(streams)
    assert targets.shape == (4, 2, 2)
    assert mask.nonzero().tolist() == [[1, 1], [3, 0]]  # the last step of each sequence
    assert targets[3, 0].tolist() == [4, -4] and targets[1, 1].tolist() == [2, -2]


def test_a_batch_moves_to_a_device():
    batch = next(iter(Streams.language_model(np.arange(20), 2, 5).batches(0)))
    assert all(field.device.type == "meta" for field in batch.to("meta").fields())


def test_lists_are_laid_out_as_arrays_are():
    from_list = next(iter(Streams(list(range(40)), list(range(1, 41)), 4, 5)))
    from_array = next(iter(Streams(np.arange(40), np.arange(1, 41), 4, 5)))
    assert torch.equal(from_list.inputs, from_array.inputs)
    assert torch.equal(from_list.targets, from_array.targets)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([[1, 2], [3]] * 10, "inputs is a ragged list"),
        ("abcdefgh", "inputs must be a tensor, a NumPy array or a list, got str"),
        (np.float32(3.0), "got float32"),
        (["a", "b"] * 10, "inputs holds <U1 values; give numbers"),
    ],
)
def test_what_is_not_an_array_is_refused_in_one_line(inputs, message):
    with pytest.raises(tbptt.TBPTTError, match=message):
        Streams(inputs, list(range(20)), 2, 2)


def test_token_ids_outside_the_vocabulary_are_named_with_the_vocabulary_size():
    tokens = torch.tensor([0, 3, 11, 12, 1] * 10)
    with pytest.raises(
        tbptt.TBPTTError, match="token id 12 at position 3 is outside the vocabulary's 12 ids"
    ):
        Streams.language_model(tokens, 2, 3, vocab_size=12)
    with pytest.raises(tbptt.TBPTTError, match="token id -1 at position 0"):
        Streams.language_model(np.array([-1, 2, 3, 4]), 1, 2, vocab_size=12)
    Streams.language_model(tokens, 2, 3, vocab_size=13)


def test_token_ids_of_a_memory_map_are_checked_in_chunks(tmp_path):
    np.save(tmp_path / "ids.npy", np.array([0, 1, 2, 99] * 5, dtype=np.int64))
    ids = np.load(tmp_path / "ids.npy", mmap_mode="r")
    with pytest.raises(tbptt.TBPTTError, match="token id 99 at position 3"):
        Streams.language_model(ids, 2, 2, vocab_size=50)
