# bnnforge on Debian bookworm with Python 3.11. The install list lives only in scripts/setup.sh.
#
#   docker build -t bnnforge .
#   docker run --rm -it -v "$PWD/runs:/bnnforge/runs" bnnforge make demo
#
# Vivado/Vitis (for the bitstream steps) are not in the image: mount a local installation and
# point XILINX_VIVADO at it, e.g. for 2024.2 installed under /tools/Xilinx:
#
#   docker run --rm -it -v /tools/Xilinx:/tools/Xilinx:ro \
#       -e XILINX_VIVADO=/tools/Xilinx/Vivado/2024.2 \
#       -e PATH=/tools/Xilinx/Vivado/2024.2/bin:/tools/Xilinx/Vitis_HLS/2024.2/bin:/usr/local/bin:/usr/bin:/bin \
#       bnnforge make test
FROM python:3.11-bookworm

# CPU-only torch wheels (the default PyPI torch is a CUDA build of several GB).
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PYTHON=python3.11

WORKDIR /bnnforge
COPY . .
RUN make setup && rm -rf /root/.cache/pip
ENV PATH=/bnnforge/.venv/bin:$PATH
CMD ["make", "demo"]
