"""Hand-written PyTorch modules of zoo architectures, as a PyTorch user would
write them (torchvision's layout and parameter names), used as the speed and
correctness reference in benchmarks."""
from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """specs/mlp.dln: 64-128-10 digits classifier."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(64, 128)
        self.output = nn.Linear(128, 10)

    def forward(self, x):
        return self.output(torch.relu(self.hidden(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + idt)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride on the 3x3 conv)."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + idt)


class _ResNet(nn.Module):
    """torchvision's ResNet: the 7x7 stem, four stages of `block` (the first of each strided, but the
    first stage's), global average pool and fc; `expansion` is the block's output width per plane."""

    def __init__(self, block, expansion, depths, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, blocks) in enumerate(zip([64, 128, 256, 512], depths)):
            layer = []
            for b in range(blocks):
                layer.append(block(cin, planes, (1 if i == 0 else 2) if b == 0 else 1))
                cin = planes * expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(512 * expansion, classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class ResNet18(_ResNet):
    """torchvision.models.resnet18 layout and names."""

    def __init__(self, classes=1000):
        super().__init__(BasicBlock, 1, [2, 2, 2, 2], classes)


class ResNet50(_ResNet):
    """torchvision.models.resnet50 layout and names."""

    def __init__(self, classes=1000):
        super().__init__(Bottleneck, 4, [3, 4, 6, 3], classes)


class LeNet5(nn.Module):
    """specs/lenet5.dln: tanh and average pooling, names as in the spec."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.f5 = nn.Linear(400, 120)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = nn.functional.avg_pool2d(torch.tanh(self.c3(x)), 2).flatten(1)
        return self.output(torch.tanh(self.f6(torch.tanh(self.f5(x)))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (dlc's
    `multihead_attention` names) on batch-first [N, T, E] inputs."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        n, t, e = x.shape
        q, k, v = (p(x).view(n, t, self.heads, e // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        o = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out_proj(o.transpose(1, 2).reshape(n, t, e))


class TransformerEncoderLayer(nn.Module):
    """specs/transformer_encoder_layer.dln: post-LN encoder layer as
    nn.TransformerEncoderLayer(512, 8, 2048, 0.1, batch_first=True), names
    self_attn.{q,k,v,out}_proj, linear1, linear2, norm1, norm2."""

    def __init__(self, d_model=512, heads=8, d_ff=2048, dropout=0.1):
        super().__init__()
        self.self_attn = SelfAttention(d_model, heads)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x):
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        f = self.linear2(self.dropout(torch.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(f))


# --------------------------------------------------------------------------- MobileNetV2, BERT, GPT-2
def _make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = round(cin * expand)
        self.use_res = stride == 1 and cin == cout
        layers = [_ConvBNReLU(cin, hidden, 1)] if expand != 1 else []
        layers += [_ConvBNReLU(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision.models.mobilenet_v2 layout and names (specs/mobilenet_v2.dln)."""

    def __init__(self, classes=1000):
        super().__init__()
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1)]
        cin = _make_divisible(32)
        features = [_ConvBNReLU(3, cin, stride=2)]
        for t, c, n, s in settings:
            for j in range(n):
                features.append(_InvertedResidual(cin, _make_divisible(c), s if j == 0 else 1, t))
                cin = _make_divisible(c)
        features.append(_ConvBNReLU(cin, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class _BertSelfAttention(nn.Module):
    """Hugging Face's eager BertSelfAttention: scores, softmax and the product
    with the values written out (no scaled_dot_product_attention)."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.head_size = heads, d // heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = (p(x).view(n, t, self.heads, self.head_size).transpose(1, 2)
                   for p in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)
        return torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(n, t, d)


class _BertLayer(nn.Module):
    def __init__(self, d=768, heads=12, ff=3072, eps=1e-12):
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = _BertSelfAttention(d, heads)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(d, d)
        self.attention.output.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d, ff)
        self.output = nn.Module()
        self.output.dense = nn.Linear(ff, d)
        self.output.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        a = self.dropout(self.attention.output.dense(self.attention.self(x)))
        x = self.attention.output.LayerNorm(x + a)
        f = self.dropout(self.output.dense(nn.functional.gelu(self.intermediate.dense(x))))
        return self.output.LayerNorm(x + f)


class BertClassifier(nn.Module):
    """specs/bert_base.dln's BertClassifier, written as Hugging Face's
    BertForSequenceClassification is (eager attention), with its names."""

    def __init__(self, vocab=30522, positions=512, types=2, d=768, layers=12, heads=12, ff=3072, eps=1e-12):
        super().__init__()
        bert = self.bert = nn.Module()
        bert.embeddings = nn.Module()
        bert.embeddings.word_embeddings = nn.Embedding(vocab, d)
        bert.embeddings.position_embeddings = nn.Embedding(positions, d)
        bert.embeddings.token_type_embeddings = nn.Embedding(types, d)
        bert.embeddings.LayerNorm = nn.LayerNorm(d, eps=eps)
        bert.encoder = nn.Module()
        bert.encoder.layer = nn.ModuleList(_BertLayer(d, heads, ff, eps) for _ in range(layers))
        bert.pooler = nn.Module()
        bert.pooler.dense = nn.Linear(d, d)
        self.classifier = nn.Linear(d, 2)
        self.dropout = nn.Dropout(0.1)

    def forward(self, input_ids, token_type_ids):
        e = self.bert.embeddings
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.dropout(e.LayerNorm(e.word_embeddings(input_ids) + e.position_embeddings(pos)
                                     + e.token_type_embeddings(token_type_ids)))
        for layer in self.bert.encoder.layer:
            h = layer(h)
        pooled = torch.tanh(self.bert.pooler.dense(h[:, 0]))
        return self.classifier(self.dropout(pooled))


class _GPT2Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.Module()
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.attn, p, nn.Linear(d, d))
        self.mlp = nn.Module()
        self.mlp.c_fc, self.mlp.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        n, t, d = x.shape
        a = self.attn
        y = self.ln_1(x)
        q, k, v = (p(y).view(n, t, self.heads, d // self.heads).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj))
        # Hugging Face's eager GPT-2 attention: causal mask on the written-out scores
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        o = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(n, t, d)
        x = x + a.out_proj(o)
        m = self.mlp.c_proj(nn.functional.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))
        return x + m


class GPT2(nn.Module):
    """specs/gpt2_small.dln (names wte, wpe, h.{i}.*, ln_f; LM head tied to wte)."""

    def __init__(self, vocab=50257, positions=1024, d=768, layers=12, heads=12):
        super().__init__()
        self.wte = nn.Parameter(torch.empty(vocab, d))
        self.wpe = nn.Parameter(torch.empty(positions, d))
        self.h = nn.ModuleList(_GPT2Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, ids):
        x = self.wte[ids] + self.wpe[: ids.shape[1]]
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.T
