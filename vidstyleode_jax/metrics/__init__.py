"""The evaluation metrics of docs/metrics_protocol.md, from network outputs (features, logits, flows, embeddings).

frechet: Fréchet distance of Gaussian feature statistics (FVD on I3D features, FID on Inception pool3), float64.
inception_score: IS from the Inception logits.
warping: warping error (Lai et al. 2018) from frames and forward / backward optical flow.
clip_accuracy: CLIP manipulation accuracy and similarity to the target text.
reconstruction: PSNR and SSIM.
"""
