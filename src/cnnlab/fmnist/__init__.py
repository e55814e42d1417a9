"""Fashion-MNIST CNNs with Keras 3: config -> model -> train -> evaluate -> run directory."""
