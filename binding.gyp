{
  "targets": [
    {
      "target_name": "splice",
      "sources": ["src/proxy/native/splice.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread"]
    }
  ]
}
