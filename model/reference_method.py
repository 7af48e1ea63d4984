"""The published implementation's patch method: the baseline mattex's exported graph is timed
against (`mattex bench --reference`, benchmarks/). Same weights and modules as mattex's Refiner;
patches are found with nonzero, cropped with unfold and written back with an indexed assignment
("scatter_nd"), and whole feature maps are upsampled to half and full resolution first."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .matting import MattingRefine
from .refiner import Refiner


class ReferenceRefiner(Refiner):
    def forward(self, src, bgr, pha, fgr, err, hid):
        H_full, W_full = src.shape[2:]
        H_half, W_half = H_full // 2, W_full // 2
        H_quat, W_quat = H_full // 4, W_full // 4
        src_bgr = torch.cat([src, bgr], dim=1)
        if self.mode == "full":
            return super().forward(src, bgr, pha, fgr, err, hid)
        err = F.interpolate(err, (H_quat, W_quat), mode="bilinear", align_corners=False)
        ref = self._reference_select(err)
        idx = torch.nonzero(ref.squeeze(1))
        idx = idx[:, 0], idx[:, 1], idx[:, 2]
        if idx[0].size(0) == 0:
            pha, fgr = (F.interpolate(t, (H_full, W_full), mode="bilinear", align_corners=False) for t in (pha, fgr))
            return pha, fgr, ref
        k3 = self.kernel_size == 3
        x = torch.cat([hid, pha, fgr], dim=1)
        x = F.interpolate(x, (H_half, W_half), mode="bilinear", align_corners=False)
        x = self._crop(x, idx, 2, 3 if k3 else 0)
        y = F.interpolate(src_bgr, (H_half, W_half), mode="bilinear", align_corners=False)
        y = self._crop(y, idx, 2, 3 if k3 else 0)
        x = self.relu(self.bn1(self.conv1(torch.cat([x, y], dim=1))))
        x = self.relu(self.bn2(self.conv2(x)))
        x = F.interpolate(x, 8 if k3 else 4, mode="nearest")
        y = self._crop(src_bgr, idx, 4, 2 if k3 else 0)
        x = self.relu(self.bn3(self.conv3(torch.cat([x, y], dim=1))))
        x = self.conv4(x)
        out = F.interpolate(torch.cat([pha, fgr], dim=1), (H_full, W_full), mode="bilinear", align_corners=False)
        out = self._replace(out, x, idx)
        return out[:, :1], out[:, 1:], ref

    def _reference_select(self, err: Tensor) -> Tensor:
        if self.mode == "sampling":
            b, _, h, w = err.shape
            flat = err.view(b, -1)
            idx = flat.topk(self.sample_pixels // 16, dim=1, sorted=False).indices
            ref = torch.zeros_like(flat).scatter_(1, idx, 1.0)
            if self.prevent_oversampling:
                ref.mul_(flat.gt(0).float())
            return ref.view(b, 1, h, w)
        return err.gt(self.threshold).float()

    @staticmethod
    def _crop(x: Tensor, idx, size: int, padding: int) -> Tensor:
        if padding:
            x = F.pad(x, (padding,) * 4)
        window = size + 2 * padding
        return x.permute(0, 2, 3, 1).unfold(1, window, size).unfold(2, window, size)[idx[0], idx[1], idx[2]]

    @staticmethod
    def _replace(x: Tensor, y: Tensor, idx) -> Tensor:
        B, C, H, W = x.shape
        x = x.view(B, C, H // 4, 4, W // 4, 4).permute(0, 2, 4, 1, 3, 5)
        x[idx[0], idx[1], idx[2]] = y
        return x.permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


def as_reference_formulation(model: MattingRefine) -> MattingRefine:
    """The same model object, its refiner switched to the reference's patch method."""
    model.refiner.__class__ = ReferenceRefiner
    return model
