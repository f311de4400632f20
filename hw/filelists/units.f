// Every bnnforge streaming unit, one module per file; paths relative to the repository root.
// A stitched accelerator's own list (with its generated top) is written to <build>/rtl/accel.f.
hw/rtl/fifo.sv
hw/rtl/dwc.sv
hw/rtl/thresholding.sv
hw/rtl/fmpadding.sv
hw/rtl/swg.sv
hw/rtl/mvtu.sv
hw/rtl/pool.sv
hw/rtl/label_select.sv
hw/rtl/dup.sv
hw/rtl/zip.sv
hw/rtl/requant.sv
hw/rtl/accpool.sv
