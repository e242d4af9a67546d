"""Small overrides that make any `tiny` config run in seconds."""

import pytest

FAST = {
    'total_steps': 12, 'log_every': 3, 'eval_every': 6,
    'model.num_layers': 1, 'model.embed_dim': 32, 'model.hidden_dim': 64,
    'model.num_heads': 2, 'model.num_kv_heads': 1, 'model.head_dim': 16,
    'data.num_train': 300, 'data.num_test': 20, 'data.batch_size': 8,
    'data.max_len': 48, 'eval.num_prompts': 4, 'eval.batch_size': 4,
    'eval.max_new_tokens': 8, 'eval.loss_batches': 1, 'ckpt.every': 4,
    'ckpt.use_async': False,
    # Online recipes (keys absent from a config are skipped).
    'rl.group_size': 4, 'rl.prompts_per_step': 4, 'rl.max_new_tokens': 8,
    'eval.pass_prompts': 2, 'eval.num_samples': 2,
}


@pytest.fixture
def fast():
  return dict(FAST)
