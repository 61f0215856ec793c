"""Display: widgets, plots and progress views. They render results; they never compute them."""
