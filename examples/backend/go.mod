module twi-asr-backend-example

go 1.19
