"""Transfer learning with pretrained torchvision CNNs on folder-per-class images."""
