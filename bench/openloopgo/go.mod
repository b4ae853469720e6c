module eventpipe/bench/openloopgo

go 1.22
