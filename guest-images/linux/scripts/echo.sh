#!/bin/sh
# Read one line from the console and print it back.
echo "echo: ready"
IFS= read -r line || { echo "echo: no input"; exit 1; }
echo "got: $line"
