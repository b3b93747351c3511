# Graph IR tests (link, shape inference, passes, ResNet builder): owned by the graph area.
imgsim_c_test(test_graph_link test_graph_link.c ASAN)
imgsim_c_test(test_graph_shapes test_graph_shapes.c ASAN)
imgsim_c_test(test_graph_passes test_graph_passes.c ASAN)
