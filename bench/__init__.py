"""`make bench`: load Bastion and a bare Flask app side by side and compare them."""
